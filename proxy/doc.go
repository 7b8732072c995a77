// Package proxy composes goldproxy's server from its parts and is the one http.Handler
// clients talk to: registry/ answers the OCI pull API, mirror/ fetches from the
// upstreams into the store, gate/ scans once per digest and judges every request,
// auth/ says who is asking, admin/ serves the API and dashboard, gc/ bounds the store.
// Server adds request ids, the access log and request metrics around them, renders
// every error through registry/httpx, warms prefetch lists, and owns the lifetime all
// background work runs in: Close cancels it and waits. With replicas on one shared
// store it tells the others what this one changed (peers.go), publishes what it holds in
// use so that collections elsewhere spare it (gc/), and runs the one-replica jobs while
// it is the elected leader (leader.go).
//
// It holds no logic of its own about content or verdicts; it must never let a request
// reach content by a path that skips the registry's checks.
package proxy
