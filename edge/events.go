package edge

import (
	"strings"
	"time"
)

// Event kinds passed to Edge.OnEvent.
const (
	EventReady   = "ready"   // a publication (push or pull) started: tracks known, stream registered
	EventGone    = "gone"    // a publication ended
	EventRefused = "refused" // a publisher was turned away
)

// Event is something integrators may want to hear about (see Edge.OnEvent).
type Event struct {
	Kind     string
	Time     time.Time
	Path     string
	Protocol string // rtsp, rtmp or pull
	// Remote is the publisher's address; for a pull, the camera URL without credentials.
	Remote     string
	Generation uint64
	// Tracks are the codecs, e.g. "H264,MPEG4Audio" (ready).
	Tracks string
	// Reason is why a publisher was refused (a rejected_total reason), or
	// why a publication ended (its error; empty for a clean end).
	Reason   string
	Duration time.Duration // gone: how long it was live
}

// emit hands ev to OnEvent, when set.
func (e *Edge) emit(ev Event) {
	if e.OnEvent == nil {
		return
	}
	ev.Time = time.Now()
	e.OnEvent(ev)
}

// refused reports a publisher turned away; connections that never named a
// path to publish (failed handshakes, readers) are not publishers.
func (e *Edge) refused(protocol, reason, path, remote string) {
	if path == "" {
		return
	}
	e.emit(Event{Kind: EventRefused, Path: path, Protocol: protocol, Remote: remote, Reason: reason})
}

func trackCodecs(s *stream) string {
	var b strings.Builder
	for i, t := range s.info(false).Tracks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(t.Codec.String())
	}
	return b.String()
}
