package gguf

import (
	"os"
	"syscall"
	"unsafe"
)

// releasePages drops the pages wholly inside b, part of a shared read-only
// file mapping, from the process: they stay in the page cache, and a later
// read of b maps them back from there (or from the file).
func releasePages(b []byte) {
	page := os.Getpagesize()
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	skip := int((uintptr(page) - start%uintptr(page)) % uintptr(page))
	n := (len(b) - skip) &^ (page - 1)
	if skip >= len(b) || n <= 0 {
		return
	}
	// An error leaves the pages where they are, which is only memory.
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), skip)), n), syscall.MADV_DONTNEED)
}
