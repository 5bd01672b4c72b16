module mk8s-worker/tests/upstream/pause

go 1.24
