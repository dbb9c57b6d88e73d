package remote

// holdBlob keeps an open blob open until the returned func is called, as
// a reader does: blob.Options.Hold, so that a blob streaming its object
// from a cache that ignores Range is not closed under the stream when its
// last reader goes.
func (s *Store) holdBlob(r *blobRef) func() {
	s.blobsMu.Lock()
	r.refs++
	s.blobsMu.Unlock()
	return func() { s.releaseBlob(r) }
}
