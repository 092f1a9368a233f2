package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// runCamera serves the embedded test clip as an IP camera would (RTSP,
// DESCRIBE/PLAY), for trying camera pulls without a camera.
func runCamera(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("camera", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", ":8554", "RTSP listen address")
	path := fs.String("path", "stream1", "stream path served")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := testmedia.RunCameraServer(ctx, *listen, *path); err != nil {
		fmt.Fprintf(stderr, "streamgrid camera: %v\n", err)
		return 1
	}
	return 0
}
