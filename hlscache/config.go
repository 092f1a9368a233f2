package hlscache

import "time"

// The defaults of the Cache fields an operator sets: Start applies them to
// the fields left unset, and internal/config starts from the same values.
const (
	DefaultHTTPAddress      = ":8888"
	DefaultMaxBytes         = 256 << 20
	DefaultUpstreamTimeout  = 5 * time.Second
	DefaultAllowOrigin      = "*"
	DefaultMaxConnsPerIP    = 256
	DefaultMaxUpstreamConns = 1024
)
