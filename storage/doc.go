// Package storage is goldproxy's local store: content by digest and the metadata around it.
//
// Blobs and manifest bytes live in distribution's blob store over a storage driver (the
// filesystem driver by default), under one internal repository: content is addressed by
// digest alone. Which upstream repository may see which digest, tag resolutions, manifest
// media types, the referrers index, scan facts and judgements are the Metadata: a bbolt
// database beside the blobs by default (meta.db, buckets whose keys start with the
// repository name), or a shared implementation for replicas (storage/postgres, with the
// blobs in S3). Either passes storagetest.Conformance; nothing above this package sees
// which one, or which storage driver, it runs on.
//
// On the pull path the store is written only by ingest, after a digest was verified, and
// read by the handlers. It must never make unverified bytes visible: a BlobWriter's content
// appears only when Commit has checked it against its digest, and a crash before that
// leaves nothing that will be served. It knows nothing of HTTP routing, upstreams or policy.
package storage
