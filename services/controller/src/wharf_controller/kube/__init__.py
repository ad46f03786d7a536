"""All API-server I/O of the controller: requests, list+watch caches, apply and prune, the work
queue, leader election and the health/metrics endpoints."""
