package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Stock caches at wire speed (measures 15, 17 and 18): caches written by `nix
// copy`, with no chunk index, so the unit is the whole store path, fetched
// (parallel ranged parts), decompressed, hashed and written as one blob
// before any byte is served — on every link of benchProfiles, narfs and
// Nix through the same proxy.

// stock runs measures 15, 17 and 18 on the stock cache of the indexed
// workload and adds their rows to b.stockRows.
func (b *bench) stock() {
	t := b.t
	w := b.idxWorkload()
	srv := serveCounting(t, w.Stock)
	links := linksTo(t, srv.URL, benchProfiles(t))
	b.stockIntro = fmt.Sprintf("Stock cache (`nix copy`, zstd, one frame per NAR as Nix 2.8 writes it) of the indexed workload's paths plus a path of one %s random file; "+
		"links: %s, narfs and `nix copy` through the same proxy. Medians of %d runs.\n\n", mib(idxBigRandomSize), b.linkNames(), b.runs)
	b.stockLargeNAR(srv, links, w.BigRandom, "random.bin", "a NAR zstd cannot shrink")
	b.stockLargeNAR(srv, links, w.Go, "VERSION", "the Go toolchain")
	b.stockPrograms(srv, links)
	b.warmWalk() // measure 18
}

func (b *bench) linkNames() string {
	s := ""
	for i, p := range benchProfiles(b.t) {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}

func (b *bench) addStock(r benchRow) { b.stockRows = append(b.stockRows, r) }

// stockLargeNAR: measure 15, the cold fetch of one large NAR: the time of
// the first read of a file of base (which needs the whole NAR verified)
// as a rate of NAR-object bytes, against one stream of the same object
// (curl through the same link) and, on loopback, the C decoder alone.
func (b *bench) stockLargeNAR(srv *countingCache, links []benchLink, base, rel, what string) {
	t := b.t
	w := b.idx
	key := narURL(t, w.Stock, base)
	obj := fileSize(t, filepath.Join(w.Stock, key))
	nar := dirBytes("/nix/store/" + base)
	for _, l := range links {
		var narfsT, curlT, zstdT []time.Duration
		var parts, hwm []int64
		for range b.runs {
			dropCaches(t)
			curlT = append(curlT, timed(t, fmt.Sprintf("curl -sf -o /dev/null '%s/%s'", l.url, key)))
			if !l.shaped() {
				dropCaches(t)
				zstdT = append(zstdT, timed(t, fmt.Sprintf("zstd -dc < '%s' >/dev/null", filepath.Join(w.Stock, key))))
			}
			cache := b.scratch()
			m := benchMount(t, l.url, w.PublicKey, cache, nil, true)
			dropCaches(t)
			m.resetHWM(t)
			before := srv.snapshot()
			narfsT = append(narfsT, timed(t, fmt.Sprintf("head -c 1 '%s/%s/%s' >/dev/null", m.Dir, base, rel)))
			parts = append(parts, int64(srv.since(before).gets[key]))
			hwm = append(hwm, m.hwm(t))
			m.stop(t)
			os.RemoveAll(cache)
		}
		r := ratio(median(curlT), median(narfsT)) // narfs's rate ÷ one stream's
		target, ok := "≥ 4× one stream (s3-region)", r >= 4
		ref := fmt.Sprintf("one stream (curl) %s", rate(obj, median(curlT)))
		result := fmt.Sprintf("%.2f× one stream", r)
		if !l.shaped() {
			rd := ratio(median(narfsT), median(zstdT))
			ref += fmt.Sprintf("; `zstd -dc` of the object %s", secs(median(zstdT)))
			result += fmt.Sprintf("; time %.2f× `zstd -dc`", rd)
			target, ok = "≤ 1.3× `zstd -dc` (loopback)", rd <= 1.3
		} else if l.name != "s3-region" {
			target, ok = "(reported)", true
		}
		b.addStock(benchRow{"15", fmt.Sprintf("One large NAR, cold (%s, %s: %s of files, a %s object): first read of `%s`", l.name, what, mib(nar), mib(obj), rel),
			fmt.Sprintf("%s = %s of object; NAR GETs (parts) %d; VmHWM %s", secs(median(narfsT)), rate(obj, median(narfsT)), median(parts), mib(slicesMax(hwm))),
			ref, result, target, verdict(ok), ""})
	}
}

// stockPrograms: measure 17, real programs started cold from a mount of
// the stock cache — `go version` and `go build` from the Go toolchain
// path, Python importing stdlib modules from its 3-path closure — against
// `nix copy` of the closure into a fresh root, then the same command.
func (b *bench) stockPrograms(srv *countingCache, links []benchLink) {
	t := b.t
	w := b.idx
	h := b.scratch()
	defer os.RemoveAll(h)
	g := newGoRun(t, h)
	type program struct {
		name, path string
		run        func(store string) string
		runs       int
	}
	progs := []program{
		{"`go version`", w.Go, func(store string) string { return g.version(filepath.Join(store, w.Go)) }, b.runs},
		{"`go build` of hello world (empty GOCACHE)", w.Go, func(store string) string { return g.build(filepath.Join(store, w.Go)) }, min(b.runs, 3)},
	}
	if w.Python != "" {
		progs = append(progs, program{"Python importing json, email, http.client, sqlite3", w.Python, w.pythonImports, b.runs})
	}
	for _, p := range progs {
		for _, l := range links {
			var narfsT, nixT, copyT []time.Duration
			var fetched []int64
			for range p.runs {
				cache := b.scratch()
				m := benchMount(t, l.url, w.PublicKey, cache, nil, true)
				g.reset()
				dropCaches(t)
				before := srv.snapshot()
				narfsT = append(narfsT, timed(t, p.run(m.Dir)))
				fetched = append(fetched, srv.since(before).allBytes)
				m.stop(t)
				os.RemoveAll(cache)

				root := b.scratch()
				g.reset()
				dropCaches(t)
				c := timed(t, nixCopyScript(l.url, w.PublicKey, root, p.path))
				copyT, nixT = append(copyT, c), append(nixT, c+timed(t, p.run(filepath.Join(root, "nix", "store"))))
				os.RemoveAll(root)
			}
			r := ratio(median(narfsT), median(nixT))
			b.addStock(benchRow{"17", fmt.Sprintf("Cold program from a stock cache (%s): %s, vs `nix copy` of its closure then the same (%d runs)", l.name, p.name, p.runs),
				fmt.Sprintf("%s; fetched %s", secs(median(narfsT)), mib(median(fetched))),
				fmt.Sprintf("%s (nix copy %s)", secs(median(nixT)), secs(median(copyT))),
				fmt.Sprintf("time %.2f", r), "≤ 0.8", verdict(r <= 0.8), ""})
		}
	}
}
