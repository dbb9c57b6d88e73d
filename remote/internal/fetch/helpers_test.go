package fetch

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/tune"
)

// The fixtures of package remote's tests: caches of Nix-made NARs.
const (
	fixtureDir = "../../../nar/testdata/nix"
	caCacheDir = "../../testdata/cache-ca"
	ownFileMin = tune.OwnFileMin
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// dirEntries lists the names inside dir (nil when it does not exist).
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// checkFiles checks that every regular file of l (the listing of the NAR
// data) reads back from the entry in dir where readers look for it: the
// blob at its offset, or the file of its own.
func checkFiles(t testing.TB, dir string, l *nar.Listing, data []byte) {
	t.Helper()
	blobData, _ := os.ReadFile(filepath.Join(dir, blob.BlobFile))
	var walk func(n *nar.Node)
	walk = func(n *nar.Node) {
		switch n.Type {
		case nar.TypeDirectory:
			for _, e := range n.Entries {
				walk(e)
			}
		case nar.TypeRegular:
			want := data[n.NarOffset : n.NarOffset+n.Size]
			var got []byte
			if n.Size >= ownFileMin {
				got, _ = os.ReadFile(filepath.Join(dir, layout.OwnFileName(n.NarOffset)))
			} else if n.NarOffset+n.Size <= int64(len(blobData)) {
				got = blobData[n.NarOffset : n.NarOffset+n.Size]
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("file at %d: stored bytes differ from the NAR's", n.NarOffset)
			}
		}
	}
	walk(l.Root)
}
