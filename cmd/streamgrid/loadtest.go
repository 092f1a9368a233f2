package main

import (
	"io"
	"os"

	"github.com/streamgrid/streamgrid/loadtest"
)

func runLoadtest(args []string, stderr io.Writer) int {
	return loadtest.Main(args, os.Stdout, stderr)
}
