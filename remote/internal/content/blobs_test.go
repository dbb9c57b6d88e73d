package content

import (
	"fmt"
	"testing"
)

func TestSmallReadaheadGrowsOnNearbyReads(t *testing.T) {
	r := &Blob{lastSmall: -1}
	var got []int
	for _, c := range []int{10, 11, 12, 14, 18, 26, 27, 100, 101} {
		got = append(got, r.smallReadahead(c))
	}
	want := []int{1, 2, 4, 8, 8, 8, 8, 1, 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("readahead %v, want %v", got, want)
	}
}
