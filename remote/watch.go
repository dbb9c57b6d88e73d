package remote

// Gen is p's generation in its cache: read it before answering from p's
// metadata; it moves when a verified listing contradicts unverified
// metadata (a .ls, a NAR header) handed out of p before.
func (g *Core) Gen(p *PathInfo) uint64 {
	return g.of(p).listings.Gen(p.Path.Hash)
}

// Subscribe calls fn(hash, gen) each time a path's generation moves, on
// the verifying goroutine, before the Open or VerifiedListing that
// verified it returns. fn must not block. cancel stops the calls.
func (g *Core) Subscribe(fn func(hash string, gen uint64)) (cancel func()) {
	cancels := make([]func(), len(g.caches))
	for i, s := range g.caches {
		cancels[i] = s.listings.Subscribe(fn)
	}
	return func() {
		for _, c := range cancels {
			c()
		}
	}
}

// Forget tells that the caller no longer shows any of p's unverified
// metadata: what was handed of it is dropped (its generation restarts).
func (g *Core) Forget(p *PathInfo) {
	g.of(p).listings.Forget(p.Path.Hash)
}
