package nar

// SameTree compares what a user sees of two trees: types, sizes,
// executable bits, targets and names. NarOffsets are ignored where either
// side lacks one (Nix versions differ on empty files). Callers use it to
// tell whether a verified listing contradicts one shown before (a .ls, a
// listing pushed by upload).
func SameTree(a, b *Node) bool {
	if a.Type != b.Type || a.Size != b.Size || a.Executable != b.Executable || a.Target != b.Target {
		return false
	}
	if a.NarOffset != 0 && b.NarOffset != 0 && a.NarOffset != b.NarOffset {
		return false
	}
	if len(a.Entries) != len(b.Entries) {
		return false
	}
	for name, ca := range a.Entries {
		cb, ok := b.Entries[name]
		if !ok || !SameTree(ca, cb) {
			return false
		}
	}
	return true
}
