package metrics

import (
	"math"
	"testing"
)

func TestAmplification(t *testing.T) {
	for _, tc := range []struct {
		upstream, served int64
		want             float64
	}{
		{0, 0, 0},
		{1000, 0, 0}, // nothing served yet: no division by zero
		{0, 100, 0},
		{300, 100, 3},
		{50, 200, 0.25},
	} {
		got := Amplification(tc.upstream, tc.served)
		if math.IsNaN(got) || math.IsInf(got, 0) || got != tc.want {
			t.Errorf("Amplification(%d, %d) = %v, want %v", tc.upstream, tc.served, got, tc.want)
		}
	}
}
