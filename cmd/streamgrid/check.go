package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlscheck"
)

const checkUsage = `usage: streamgrid check URL [--duration 20s] [--json]

Follows a live HLS stream (a multivariant or media playlist URL, ours or
not) for the duration and checks the rules of RFC 8216 and Low-Latency HLS
(docs/players.md lists them). Exit status: 0 when no rule was broken, 1 when
some were, 2 when the stream could not be checked.
`

// runCheck is `streamgrid check`.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage); fs.PrintDefaults() }
	duration := fs.Duration("duration", 20*time.Second, "how long to follow the stream")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	// The URL may come before the flags.
	var url string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		url, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if url == "" && fs.NArg() > 0 {
		url = fs.Arg(0)
	}
	if url == "" {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &hlscheck.Checker{URL: url, Duration: *duration}
	rep, err := c.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "streamgrid check: %v\n", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		fmt.Fprintf(stdout, "%s: %d playlists, low-latency %v, %d reloads, %d segments, %d parts, %d fetches (%d after leaving the playlist) in %.1f s\n",
			rep.URL, len(rep.Playlists), rep.LowLatency, rep.Reloads, rep.Segments, rep.Parts, rep.Fetches, rep.LateFetches, rep.DurationSecs)
		fmt.Fprintf(stdout, "rules checked: %s\n", strings.Join(rep.Checked, ", "))
		for _, v := range rep.Violations {
			fmt.Fprintf(stdout, "VIOLATION %s %s: %s\n", v.Rule, v.Playlist, v.Detail)
		}
		if rep.OK() {
			fmt.Fprintln(stdout, "OK: no violation")
		} else {
			fmt.Fprintf(stdout, "FAIL: %d violations %v\n", len(rep.Violations), rep.Counts)
		}
	}
	if !rep.OK() {
		return 1
	}
	return 0
}
