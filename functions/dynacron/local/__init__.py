"""The whole system on one machine: an embedded moto server, the poller and worker loops."""
