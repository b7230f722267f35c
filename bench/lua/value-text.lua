-- S3: read one metric, GET /value/gauge/m1, keep-alive.
wrk.method = "GET"
wrk.path = "/value/gauge/m1"
