//go:build !linux

package hlscache

import "errors"

// memBodySupported: memfds and sendfile(2) are Linux's; elsewhere bodies
// stay on the heap and are written (viewerconn.go).
const memBodySupported = false

func newMemBody([]byte) (*memBody, error) { return nil, errors.New("memfd: not supported") }

func (m *memBody) free() {}

func memfdLimit() int64 { return 0 }
