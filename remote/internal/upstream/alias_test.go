package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Moved from the end of remote's TestIndexAliasHangingKey: once an alias
// outwaited its lookup, no alias is asked for a while, so one hanging key
// does not cost every lookup its wait.
func TestAliasPausedAfterSlow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/nix-cache-info":
			w.Write([]byte("StoreDir: /nix/store\nNarfsIndexAliases: 1\n"))
		case strings.HasPrefix(r.URL.Path, "/index/"):
			<-r.Context().Done() // hangs
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c := openCache(t, srv.URL, trustedOptions(t))
	if !c.IndexesDeclared() {
		t.Fatal("NarfsIndexAliases: 1 did not turn aliases on")
	}
	pending := func() int {
		c.aliases.mu.Lock()
		defer c.aliases.mu.Unlock()
		return len(c.aliases.pending)
	}
	const h1, h2 = "00000000000000000000000000000000", "11111111111111111111111111111111"
	c.startIndexAlias(h1)
	if pending() != 1 {
		t.Fatal("no alias asked for with aliases on")
	}
	obj, err, asked := c.takeIndexAlias(context.Background(), h1, false)
	if obj != nil || !asked || !errors.Is(err, errAliasSlow) {
		t.Fatalf("takeIndexAlias of a hanging key = %v, %v, %v; want errAliasSlow", obj != nil, err, asked)
	}
	c.startIndexAlias(h2)
	if pending() != 0 {
		t.Error("an alias was asked for right after one outwaited its lookup")
	}
	// The pause also holds back layout-2 index requests (fetchIndex).
	if until := time.Unix(0, c.aliases.slowUntil.Load()); time.Until(until) <= 0 {
		t.Error("no pause recorded")
	}
}
