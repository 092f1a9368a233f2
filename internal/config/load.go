package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the file at path (none when path is ""), then the environment.
func Load(path string, environ []string) (*Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := c.decode(b); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(c, environ); err != nil {
		return nil, err
	}
	for i := range c.Sources {
		c.Sources[i].setDefaults()
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) decode(b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if err == nil || errors.Is(err, io.EOF) {
		c.Bus.URLs = nilIfEmpty(c.Bus.URLs)
		c.Bus.Server.Routes = nilIfEmpty(c.Bus.Server.Routes)
		c.Gossip.Seeds = nilIfEmpty(c.Gossip.Seeds)
		c.Gossip.OldKeys = nilIfEmpty(c.Gossip.OldKeys)
		if len(c.Sources) == 0 {
			c.Sources = nil
		}
		if len(c.Auth.Users) == 0 {
			c.Auth.Users = nil
		}
		return nil
	}
	return nameKeys(b, err)
}

func nilIfEmpty(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	return v
}

// nameKeys rewrites yaml.v3's "line N: ..." errors to name the key at line N.
func nameKeys(src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return err
	}
	keys := map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if prefix != "" {
					k = prefix + "." + k
				}
				keys[n.Content[i].Line] = k
				walk(n.Content[i+1], k)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", prefix, i))
			}
		}
	}
	walk(&root, "")
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		var line int
		if _, scanErr := fmt.Sscanf(m, "line %d:", &line); scanErr == nil && keys[line] != "" {
			m = keys[line] + ": " + m
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}
