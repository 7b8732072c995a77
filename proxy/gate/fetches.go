package gate

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
)

// fetchSet runs the fetches of an image's blobs concurrently and lets the scan wait for
// any one of them.
type fetchSet struct {
	done    map[digest.Digest]chan struct{}
	errs    map[digest.Digest]*error
	streams map[digest.Digest]*layerStream // the layers' (blobs[1:])
	wg      sync.WaitGroup
}

// newFetchSet fetches blobs (the config, then the layers), at most 4 at a time; each
// layer's bytes are also streamed to the scan as they are stored (spilling in spillDir).
func newFetchSet(ctx context.Context, blobs []digest.Digest, spillDir string, fetch func(context.Context, digest.Digest, func([]byte) bool) error) *fetchSet {
	fs := &fetchSet{done: map[digest.Digest]chan struct{}{}, errs: map[digest.Digest]*error{}, streams: map[digest.Digest]*layerStream{}}
	for i, b := range blobs {
		if _, dup := fs.streams[b]; i > 0 && !dup {
			fs.streams[b] = newLayerStream(spillDir)
		}
	}
	sem := make(chan struct{}, 4)
	for _, b := range blobs {
		if _, dup := fs.done[b]; dup {
			continue
		}
		done, errp := make(chan struct{}), new(error)
		fs.done[b], fs.errs[b] = done, errp
		stream := fs.streams[b]
		var tap func([]byte) bool
		if stream != nil {
			tap = stream.tap
		}
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			defer close(done)
			defer func() {
				if stream != nil {
					stream.finish(*errp)
				}
			}()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				*errp = ctx.Err()
				return
			}
			defer func() { <-sem }()
			if err := fetch(ctx, b, tap); err != nil {
				*errp = fmt.Errorf("ingest %s: %w", b, err)
			}
		}()
	}
	return fs
}

// wait blocks until blob d is in the store (or failed to get there).
func (fs *fetchSet) wait(ctx context.Context, d digest.Digest) error {
	done, ok := fs.done[d]
	if !ok {
		return nil // not one of this image's fetches: already in the store
	}
	select {
	case <-done:
		return *fs.errs[d]
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close waits for every fetch and lets go of the layers' streams (their spill files):
// the scan is over.
func (fs *fetchSet) close() {
	fs.wg.Wait()
	for _, s := range fs.streams {
		s.release()
	}
}

// all waits for every fetch and returns the first failure.
func (fs *fetchSet) all(ctx context.Context) error {
	for d := range fs.done {
		if err := fs.wait(ctx, d); err != nil {
			return err
		}
	}
	return nil
}
