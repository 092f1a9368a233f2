package media

import (
	"slices"
	"sync"
	"testing"
)

func TestQueueDropsUntilKeyframe(t *testing.T) {
	video := func(track uint8, key bool) Tag {
		tag := Tag{Track: track, Video: true}
		if key {
			tag.Flags = FlagKeyframe
		}
		return tag
	}
	audio := Tag{Track: 9}
	type push struct {
		v    int
		tag  Tag
		want Drop
	}
	cases := []struct {
		name   string
		limit  int
		pushes []push
		out    []int
	}{
		{"fits", 3, []push{{1, video(0, true), DropNone}, {2, video(0, false), DropNone}, {3, audio, DropNone}}, []int{1, 2, 3}},
		{"full drops, then video waits for a keyframe", 2, []push{
			{1, video(0, true), DropNone}, {2, video(0, false), DropNone},
			{3, video(0, false), DropFull},
		}, []int{1, 2}},
		{"a full drop of audio makes video wait too", 1, []push{
			{1, audio, DropNone}, {2, audio, DropFull},
		}, []int{1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := NewQueue[int](c.limit)
			for _, p := range c.pushes {
				if got := q.Push(p.v, p.tag); got != p.want {
					t.Fatalf("push %d: %v, want %v", p.v, got, p.want)
				}
			}
			if got := q.Take(nil); !slices.Equal(got, c.out) {
				t.Fatalf("took %v, want %v", got, c.out)
			}
		})
	}

	// After the drop: non-keyframes of every video track are refused,
	// audio passes, and each track resumes at its own keyframe.
	q := NewQueue[int](1)
	q.Push(1, video(0, true))
	if got := q.Push(2, video(0, false)); got != DropFull {
		t.Fatalf("full queue: %v", got)
	}
	q.Take(nil)
	steps := []push{
		{3, video(0, false), DropWaitKeyframe},
		{4, video(1, false), DropWaitKeyframe},
		{5, audio, DropNone},
		{6, video(0, true), DropFull}, // 5 still waits
	}
	for _, p := range steps {
		if got := q.Push(p.v, p.tag); got != p.want {
			t.Fatalf("push %d: %v, want %v", p.v, got, p.want)
		}
	}
	q.Take(nil)
	for _, p := range []push{
		{7, video(0, true), DropNone},
		{8, video(1, false), DropWaitKeyframe}, // checked before the limit
	} {
		if got := q.Push(p.v, p.tag); got != p.want {
			t.Fatalf("push %d: %v, want %v", p.v, got, p.want)
		}
	}
	q.Take(nil)
	if got := q.Push(9, video(0, false)); got != DropNone {
		t.Fatalf("track 0 resumed at its keyframe, yet: %v", got)
	}
	q.Take(nil)
	if got := q.Push(10, video(1, false)); got != DropWaitKeyframe {
		t.Fatalf("track 1 has had no keyframe, yet: %v", got)
	}
	if got := q.Push(11, video(1, true)); got != DropNone {
		t.Fatalf("track 1 keyframe: %v", got)
	}
	if q.Dropped() != 6 {
		t.Fatalf("dropped %d, want 6", q.Dropped())
	}
}

func TestQueueForceAndPop(t *testing.T) {
	q := NewQueue[string](1)
	q.Push("a", Tag{})
	q.Force("marker")
	if got := q.Push("b", Tag{}); got != DropFull {
		t.Fatalf("push past the limit: %v", got)
	}
	if q.Len() != 2 {
		t.Fatalf("len %d", q.Len())
	}
	for _, want := range []string{"a", "marker"} {
		if v, ok := q.Pop(); !ok || v != want {
			t.Fatalf("pop: %q %v, want %q", v, ok, want)
		}
	}
	if _, ok := q.Pop(); ok {
		t.Fatal("pop from an empty queue")
	}
	if q.Dropped() != 1 {
		t.Fatalf("dropped %d, want 1", q.Dropped())
	}
}

func TestQueueConcurrentOrder(t *testing.T) {
	const n = 10000
	q := NewQueue[int](n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			q.Push(i, Tag{})
		}
	}()
	var got, buf []int
	for len(got) < n {
		<-q.Ready()
		batch := q.Take(buf)
		got = append(got, batch...)
		buf = batch
	}
	wg.Wait()
	for i, v := range got {
		if v != i {
			t.Fatalf("item %d is %d", i, v)
		}
	}
}

func TestPacketTag(t *testing.T) {
	p := &Packet{Track: 3, Codec: CodecH265, Flags: FlagKeyframe | FlagDiscontinuity}
	if got := p.Tag(); got != (Tag{Track: 3, Video: true, Flags: FlagKeyframe | FlagDiscontinuity}) {
		t.Fatalf("tag %+v", got)
	}
	if (&Packet{Codec: CodecAAC}).Tag().Video {
		t.Fatal("AAC tagged as video")
	}
}

func TestQueueReady(t *testing.T) {
	q := NewQueue[int](2)
	q.PushQuiet(1, Tag{})
	select {
	case <-q.Ready():
		t.Fatal("PushQuiet woke the reader")
	default:
	}
	q.Notify()
	<-q.Ready()
	q.Push(2, Tag{})
	<-q.Ready()
	if q.Push(3, Tag{}) != DropFull {
		t.Fatal("third push into a queue of two")
	}
	select {
	case <-q.Ready():
		t.Fatal("a refused push woke the reader")
	default:
	}
}
