package main

import (
	"io"
	"os"

	"github.com/streamgrid/streamgrid/loadtest"
)

func runLoadtest(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "sample" {
		// streamgrid loadtest sample: a node's memory and resources over time.
		return loadtest.SampleMain(args[1:], os.Stdout, stderr)
	}
	return loadtest.Main(args, os.Stdout, stderr)
}
