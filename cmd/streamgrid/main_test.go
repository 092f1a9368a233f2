package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestFindConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		explicit string
		present  []string
		want     string
	}{
		{"explicit wins", "my.yml", []string{"streamgrid.yml"}, "my.yml"},
		{"working directory first", "", []string{"streamgrid.yml", "/etc/streamgrid/streamgrid.yml"}, "streamgrid.yml"},
		{"then /etc", "", []string{"/etc/streamgrid/streamgrid.yml"}, "/etc/streamgrid/streamgrid.yml"},
		{"none", "", nil, ""},
	} {
		got := findConfig(tc.explicit, func(p string) bool {
			for _, x := range tc.present {
				if x == p {
					return true
				}
			}
			return false
		})
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout
	}{
		{[]string{"--version"}, 0, "streamgrid dev"},
		{[]string{"version"}, 0, "streamgrid dev"},
		{[]string{"edge", "--version"}, 0, "streamgrid dev"},
		{[]string{"--help"}, 0, "usage: streamgrid"},
		{[]string{"-h"}, 0, "usage: streamgrid"},
		{[]string{"help"}, 0, "usage: streamgrid"},
		{[]string{"origin", "--help"}, 0, "usage: streamgrid"},
		{[]string{"--bogus"}, 2, ""},
		{[]string{"nonsense"}, 2, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q", tc.args, code, tc.code, stdout.String(), stderr.String())
		}
	}
}
