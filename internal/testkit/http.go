package testkit

import (
	"bufio"
	"net/http"
	"strings"
)

// GetText GETs url with c (http.DefaultClient when nil) and returns the
// status and the body read line by line, each line ended by "\n" (a playlist
// served with CRLF reads the same). Lines longer than 1 MiB end the body.
func GetText(c *http.Client, url string) (int, string, error) {
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return resp.StatusCode, b.String(), nil
}
