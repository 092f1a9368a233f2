package edge

// msUnwrapper turns RTMP's 32-bit millisecond timestamps, which wrap after
// 2^32 ms (about 49.7 days), into a 64-bit timeline. Each new value is taken
// as the shortest signed step from the previous one, so the timeline crosses
// the wrap forwards, and small backward steps (audio and video interleaved
// slightly out of order) stay small instead of becoming a 49-day jump.
type msUnwrapper struct {
	started bool
	prev    uint32
	acc     int64
}

// unwrap returns ts on the 64-bit timeline. The first value is kept as it is.
func (u *msUnwrapper) unwrap(ts uint32) int64 {
	if !u.started {
		u.started = true
		u.prev = ts
		u.acc = int64(ts)
		return u.acc
	}
	u.acc += int64(int32(ts - u.prev))
	u.prev = ts
	return u.acc
}
