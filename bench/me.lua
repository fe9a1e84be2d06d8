-- wrk script: GET /api/users/me with a session cookie, as a browser behind a TLS proxy sends it.
wrk.method = "GET"
wrk.headers["Cookie"] = os.getenv("BENCH_COOKIE") or ""
wrk.headers["X-Forwarded-Proto"] = "https"
wrk.headers["X-Forwarded-For"] = "127.0.0.2"
wrk.headers["User-Agent"] = "plp-bench"
