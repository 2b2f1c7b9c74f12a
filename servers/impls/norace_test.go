//go:build !race

package impls_test

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = false
