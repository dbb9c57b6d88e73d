// Package layout names the files of a NAR's local cache entry beside its
// blob (blob.BlobFile): written by a fetch, read by the readers of the
// entry. On-disk names, not tunables: changing one changes the format.
package layout

import (
	"encoding/hex"
	"strconv"
)

// ListingMeta is the verified listing's file beside an entry's root.
const ListingMeta = "listing.json"

// OwnFileName names the file holding the contents at a NAR offset.
func OwnFileName(narOffset int64) string { return "f-" + strconv.FormatInt(narOffset, 10) }

// OwnSumName names the record of the hash of the own file name.
func OwnSumName(name string) string { return name + ".sha256" }

// EncodeSum is the record's contents: the hex SHA-256 and a newline.
func EncodeSum(sum []byte) []byte { return []byte(hex.EncodeToString(sum) + "\n") }
