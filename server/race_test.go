//go:build race

package server

// raceEnabled skips the tests whose timings the race detector's slowdown
// would make meaningless.
const raceEnabled = true
