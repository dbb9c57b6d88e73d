// Package tune holds the core's tunables in one place, each with the
// reason for its value: sizes, memos, lingers and bounds that are chosen,
// not dictated by a format. On-disk names and format limits (chunkindex,
// localcache's layout, blob file names) and the backend client's own
// defaults stay with their packages, which define them as API.
//
// Constants only; std only. The core's parts, and blob and localcache,
// import it.
package tune
