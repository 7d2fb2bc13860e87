//go:build !linux

package gguf

// releasePages leaves b alone: other systems keep the mapping's pages.
func releasePages(b []byte) {}
