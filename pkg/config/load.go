package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// LoadOptions says where to read the configuration from.
type LoadOptions struct {
	// File is the main config file; its drop-ins are File+".d/*.yaml".
	File string
	// FileRequired makes a missing File an error (it was named with --config).
	FileRequired bool
	// Env is the environment, as os.Environ returns it.
	Env []string
	// Flags, when set, are consulted for every key whose flag was given.
	Flags *pflag.FlagSet
	// Hostname returns the default node-name; nil uses os.Hostname.
	Hostname func() string
	// SkipFileChecks skips checks of the token-file's existence, for `config init`
	// writing a config meant for another host.
	SkipFileChecks bool
}

// keyInfo describes one key, read from the Config struct's tags.
type keyInfo struct {
	name  string
	index int
	kind  reflect.Kind
	def   string
	help  string
}

var keyTable = func() []keyInfo {
	t := reflect.TypeOf(Config{})
	var out []keyInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("key")
		if name == "" {
			continue
		}
		out = append(out, keyInfo{name: name, index: i, kind: f.Type.Kind(), def: f.Tag.Get("default"), help: f.Tag.Get("help")})
	}
	return out
}()

func lookupKey(name string) (keyInfo, bool) {
	for _, k := range keyTable {
		if k.name == name {
			return k, true
		}
	}
	return keyInfo{}, false
}

// KeyDoc is one key's name, default and meaning, for documentation.
type KeyDoc struct{ Name, Default, Help string }

// Keys lists every configuration key in the order of the Config struct.
func Keys() []KeyDoc {
	out := make([]KeyDoc, 0, len(keyTable))
	for _, k := range keyTable {
		out = append(out, KeyDoc{Name: k.name, Default: k.def, Help: k.help})
	}
	return out
}

// Defaults returns a Config holding every key's default (node-name empty).
func Defaults() *Config {
	c := &Config{sources: map[string]Source{}}
	v := reflect.ValueOf(c).Elem()
	for _, k := range keyTable {
		if k.def == "" || k.name == "node-name" {
			continue
		}
		// Defaults are well-formed by construction; a test checks every one.
		_ = setString(v.Field(k.index), k.def)
	}
	return c
}

// AddFlags registers one flag per key on fs.
func AddFlags(fs *pflag.FlagSet) {
	for _, k := range keyTable {
		help := k.help
		if k.def != "" {
			help += " (default " + k.def + ")"
		}
		switch k.kind {
		case reflect.Int:
			fs.Int(k.name, 0, help)
		case reflect.Bool:
			fs.Bool(k.name, false, help)
		case reflect.Slice:
			fs.StringSlice(k.name, nil, help+"; repeat the flag or separate with commas")
		case reflect.Map:
			fs.String(k.name, "", help+"; a YAML or JSON mapping")
		default:
			fs.String(k.name, "", help)
		}
	}
}

// Load reads, merges and validates the configuration. A *Error lists every
// problem found.
func Load(opts LoadOptions) (*Config, error) {
	c := Defaults()
	var probs problems
	tokenFiles := map[string]bool{}

	files, err := configFiles(opts.File, opts.FileRequired)
	if err != nil {
		probs.add("", "", Source{Kind: SourceFile, Name: opts.File}, err.Error())
	}
	if opts.File != "" {
		checkConfigDir(filepath.Dir(opts.File), &probs)
		checkDropInDir(opts.File+".d", &probs)
	}
	for _, f := range files {
		if !checkIntegrity(f, "", Source{Kind: SourceFile, Name: f}, &probs) {
			continue
		}
		if c.loadFile(f, &probs) {
			tokenFiles[f] = true
		}
	}
	c.loadEnv(opts.Env, &probs)
	if opts.Flags != nil {
		c.loadFlags(opts.Flags, &probs)
	}

	if c.NodeName == "" {
		if opts.Hostname != nil {
			c.NodeName = opts.Hostname()
		} else {
			c.NodeName = defaultNodeName()
		}
	}
	c.resolveToken(opts, tokenFiles, &probs)
	c.resolveAgentToken(opts, &probs)
	c.validate(&probs)
	c.validateSecrets(&probs)
	c.validateInstallScript(&probs)
	c.validatePassthrough(&probs)
	c.collectWarnings()
	if len(probs) > 0 {
		return c, &Error{Problems: probs}
	}
	return c, nil
}

// configFiles returns the main file (if present) and its drop-ins in lexical order.
func configFiles(main string, required bool) ([]string, error) {
	if main == "" {
		return nil, nil
	}
	var out []string
	if _, err := os.Stat(main); err == nil {
		out = append(out, main)
	} else if required || !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cannot read config file: %v", err)
	}
	dropins, err := filepath.Glob(filepath.Join(main+".d", "*.yaml"))
	if err != nil {
		return out, err
	}
	sort.Strings(dropins)
	return append(out, dropins...), nil
}

// loadFile merges one YAML file; it reports whether the file sets a secret
// (token or agent-token).
func (c *Config) loadFile(path string, probs *problems) (holdsToken bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		probs.add("", "", Source{Kind: SourceFile, Name: path}, fmt.Sprintf("cannot read: %v", err))
		return false
	}
	return c.loadYAML(path, data, probs)
}

func (c *Config) loadYAML(path string, data []byte, probs *problems) (holdsToken bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		probs.add("", "", Source{Kind: SourceFile, Name: path}, "not valid YAML: "+err.Error())
		return false
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return false // an empty file
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return false
	}
	if root.Kind != yaml.MappingNode {
		probs.add("", "", Source{Kind: SourceFile, Name: path, Line: root.Line}, "the file must be a mapping of key: value")
		return false
	}
	v := reflect.ValueOf(c).Elem()
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		kn, vn := root.Content[i], root.Content[i+1]
		src := Source{Kind: SourceFile, Name: path, Line: kn.Line}
		name := kn.Value
		k, ok := lookupKey(name)
		if !ok {
			msg := "unknown key"
			if s := suggest(name); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			probs.add(name, "", src, msg)
			continue
		}
		if seen[name] {
			probs.add(name, "", src, "key given twice in one file")
			continue
		}
		seen[name] = true
		if err := setNode(v.Field(k.index), vn); err != nil {
			probs.add(name, nodeText(vn), src, err.Error())
			continue
		}
		c.sources[name] = src
		if name == "token" || name == "agent-token" {
			holdsToken = true
		}
	}
	return holdsToken
}

func (c *Config) loadEnv(env []string, probs *problems) {
	vars := map[string]string{}
	for _, kv := range env {
		if i := strings.IndexByte(kv, '='); i > 0 {
			vars[kv[:i]] = kv[i+1:]
		}
	}
	v := reflect.ValueOf(c).Elem()
	for _, k := range keyTable {
		name := EnvName(k.name)
		val, ok := vars[name]
		if !ok {
			continue
		}
		src := Source{Kind: SourceEnv, Name: name}
		if err := setString(v.Field(k.index), val); err != nil {
			probs.add(k.name, redactIf(k.name, val), src, err.Error())
			continue
		}
		c.sources[k.name] = src
	}
}

func (c *Config) loadFlags(fs *pflag.FlagSet, probs *problems) {
	v := reflect.ValueOf(c).Elem()
	for _, k := range keyTable {
		f := fs.Lookup(k.name)
		if f == nil || !f.Changed {
			continue
		}
		src := Source{Kind: SourceFlag, Name: k.name}
		var err error
		if k.kind == reflect.Slice {
			var vals []string
			vals, err = fs.GetStringSlice(k.name)
			if err == nil {
				v.Field(k.index).Set(reflect.ValueOf(cleanList(vals)))
			}
		} else {
			err = setString(v.Field(k.index), f.Value.String())
		}
		if err != nil {
			probs.add(k.name, redactIf(k.name, f.Value.String()), src, err.Error())
			continue
		}
		c.sources[k.name] = src
	}
}

// resolveToken checks that exactly one of token/token-file is set, that
// no file holding the secret is readable by others, and reads it.
func (c *Config) resolveToken(opts LoadOptions, tokenFiles map[string]bool, probs *problems) {
	for _, f := range sortedKeys(tokenFiles) {
		// Even a file whose token a later source overrides still holds a secret.
		checkPrivate(f, "token", Source{Kind: SourceFile, Name: f}, probs)
	}
	switch {
	case c.Token != "" && c.TokenFile != "":
		probs.add("token-file", c.TokenFile, c.SourceOf("token-file"),
			fmt.Sprintf("token and token-file are both set (token from %s): set exactly one", c.SourceOf("token")))
	case c.Token == "" && c.TokenFile == "":
		probs.add("token", "", c.SourceOf("token"), "required: set token or token-file (the shared cluster secret)")
	case c.Token != "":
		c.secret = c.Token
	default:
		c.secret = c.readSecretFile(opts, "token-file", c.TokenFile, probs)
	}
}

// readSecretFile reads the secret file named by key: an absolute path,
// owned by root, private, not empty.
func (c *Config) readSecretFile(opts LoadOptions, key, path string, probs *problems) string {
	if opts.SkipFileChecks {
		return ""
	}
	if !filepath.IsAbs(path) {
		probs.add(key, path, c.SourceOf(key), "must be an absolute path")
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		probs.add(key, path, c.SourceOf(key), fmt.Sprintf("cannot read the token file: %v", err))
		return ""
	}
	if !checkIntegrity(path, key, c.SourceOf(key), probs) || !checkPrivate(path, key, c.SourceOf(key), probs) {
		return ""
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		probs.add(key, path, c.SourceOf(key), "the token file is empty")
	}
	return secret
}

// checkPrivate refuses a secret-holding file that group or others can read.
func checkPrivate(path, key string, src Source, probs *problems) bool {
	st, err := os.Stat(path)
	if err != nil {
		return true // reported elsewhere
	}
	if mode := st.Mode().Perm(); mode&0o077 != 0 {
		probs.add(key, path, src, fmt.Sprintf("%s holds the cluster token but has mode %#o, readable by group or others: run chmod 600 %s", path, mode, path))
		return false
	}
	return true
}

// setNode decodes a YAML value into a field of the Config.
func setNode(f reflect.Value, n *yaml.Node) error {
	switch f.Kind() {
	case reflect.Slice:
		var list []string
		switch n.Kind {
		case yaml.SequenceNode:
			for _, item := range n.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("want a list of strings")
				}
				list = append(list, item.Value)
			}
		case yaml.ScalarNode:
			if n.Tag == "!!null" {
				break
			}
			list = strings.Split(n.Value, ",")
		default:
			return fmt.Errorf("want a list of strings")
		}
		f.Set(reflect.ValueOf(cleanList(list)))
		return nil
	case reflect.Map:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("want a mapping of RKE2 config keys to values")
		}
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			return fmt.Errorf("want a mapping of RKE2 config keys to values: %v", err)
		}
		f.Set(reflect.ValueOf(Extra(m)))
		return nil
	default:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("want a single value, not a list or mapping")
		}
		if n.Tag == "!!null" {
			return setString(f, "")
		}
		return setString(f, n.Value)
	}
}

// setString parses s into a field of the Config.
func setString(f reflect.Value, s string) error {
	switch f.Kind() {
	case reflect.String:
		f.SetString(strings.TrimSpace(s))
	case reflect.Int:
		s = strings.TrimSpace(s)
		if s == "" {
			f.SetInt(0)
			return nil
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		f.SetInt(int64(n))
	case reflect.Bool:
		switch strings.TrimSpace(s) {
		case "true":
			f.SetBool(true)
		case "false", "":
			f.SetBool(false)
		default:
			return fmt.Errorf("want true or false")
		}
	case reflect.Slice:
		if strings.TrimSpace(s) == "" {
			f.Set(reflect.Zero(f.Type()))
			return nil
		}
		f.Set(reflect.ValueOf(cleanList(strings.Split(s, ","))))
	case reflect.Map:
		if strings.TrimSpace(s) == "" {
			f.Set(reflect.Zero(f.Type()))
			return nil
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			return fmt.Errorf("want a YAML or JSON mapping: %v", err)
		}
		f.Set(reflect.ValueOf(Extra(m)))
	default:
		return fmt.Errorf("unsupported key type %s", f.Kind())
	}
	return nil
}

func cleanList(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// nodeText shows a bad value in an error. Only scalars are shown: a list or
// mapping may be recursive through aliases and is described by the message.
func nodeText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

func redactIf(key, val string) string {
	if key == "token" || key == "agent-token" {
		return "(hidden)"
	}
	return val
}

// suggest returns the known key closest to name, if it is close.
func suggest(name string) string {
	best, bestD := "", 4
	for _, k := range keyTable {
		if d := editDistance(name, k.name); d < bestD {
			best, bestD = k.name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }
