"""What pyproject.toml cannot say: the root ``template.yaml`` ships inside the package.

The template stays at the repository root (``sam build`` and ``sam validate`` read it there and it
is the one file to edit); building a wheel copies it to ``dynacron/template.yaml``, where
``dynacron local`` and ``dynacron.testing`` find it outside a checkout
(``dynacron.local.provision.find_template``). The sdist carries it through MANIFEST.in.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TEMPLATE = Path(__file__).resolve().parent / "template.yaml"


class build_py_with_template(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "dynacron" / "template.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(TEMPLATE), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode),
                str(Path(self.build_lib) / "dynacron" / "template.yaml")]


setup(cmdclass={"build_py": build_py_with_template})
