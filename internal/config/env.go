package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every override variable.
const EnvPrefix = "SG_"

// applyEnv sets every leaf key from SG_<PATH> where PATH is the key path in
// upper case joined with '_' (origin.hls.variant → SG_ORIGIN_HLS_VARIANT).
// Lists take comma-separated values. An SG_ variable that names no key is an error.
func applyEnv(c *Config, environ []string) error {
	leaves := map[string]reflect.Value{}
	names := map[string]string{}
	collectLeaves(reflect.ValueOf(c).Elem(), "", leaves, names)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		f, ok := leaves[k]
		if !ok {
			return fmt.Errorf("config: environment variable %s names no configuration key", k)
		}
		if err := setFromString(f, v); err != nil {
			return fmt.Errorf("config: %s (%s): %w", k, names[k], err)
		}
	}
	return nil
}

func collectLeaves(v reflect.Value, prefix string, out map[string]reflect.Value, names map[string]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			collectLeaves(f, key, out, names)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			// Lists of records (sources) are set in the file only.
		default:
			env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
			out[env] = f
			names[env] = key
		}
	}
}

func setFromString(f reflect.Value, s string) error {
	if f.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Slice:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported kind %s", f.Kind())
	}
	return nil
}
