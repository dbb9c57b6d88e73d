package narinfo

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseCacheInfo(t *testing.T) {
	tests := []struct {
		in   string
		want CacheInfo
	}{
		{"StoreDir: /nix/store\n", CacheInfo{StoreDir: "/nix/store"}},
		{"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", CacheInfo{StoreDir: "/nix/store", WantMassQuery: true, Priority: 40}},
		{"WantMassQuery: true\nPriority:-3", CacheInfo{Priority: -3}},
		{"no colon here\nStoreDir:/x  \r\nOther: y\n\n", CacheInfo{StoreDir: "/x"}},
		{" StoreDir: /untrimmed-key\n", CacheInfo{}},
		{"", CacheInfo{}},
	}
	for _, tt := range tests {
		got, err := ParseCacheInfo([]byte(tt.in))
		if err != nil || !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("ParseCacheInfo(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"Priority: high\n", "Priority: 99999999999999999999\n", "Priority:\n"} {
		if _, err := ParseCacheInfo([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseCacheInfo(%q): %v, want ErrInvalid", in, err)
		}
	}
}

func TestParseCacheInfoFixtures(t *testing.T) {
	files, _ := filepath.Glob(sharedFixtures + "/cache-*/nix-cache-info")
	if len(files) == 0 {
		t.Fatal("no nix-cache-info fixtures")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ci, err := ParseCacheInfo(data)
		if err != nil || ci.StoreDir != "/nix/store" {
			t.Errorf("%s: %+v, %v", f, ci, err)
		}
	}
}
