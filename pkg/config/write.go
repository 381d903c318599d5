package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Marshal renders c as a config file holding every key that differs from
// its default, in the order of the reference, under a short header.
func Marshal(c *Config) ([]byte, error) {
	def := Defaults()
	dv := reflect.ValueOf(def).Elem()
	cv := reflect.ValueOf(c).Elem()
	root := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range keyTable {
		f := cv.Field(k.index)
		if reflect.DeepEqual(f.Interface(), dv.Field(k.index).Interface()) {
			continue
		}
		var val yaml.Node
		switch k.kind {
		case reflect.Int:
			val = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(f.Int(), 10)}
		case reflect.String:
			val = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.String()}
		case reflect.Bool:
			val = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(f.Bool())}
		default:
			if err := val.Encode(f.Interface()); err != nil {
				return nil, fmt.Errorf("config: encode %s: %w", k.name, err)
			}
		}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k.name}, &val)
	}
	var buf bytes.Buffer
	buf.WriteString("# rke2-hanode configuration: every key is described in the README.\n")
	buf.WriteString("# This file holds the cluster token: keep it mode 0600.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if len(root.Content) > 0 {
		if err := enc.Encode(root); err != nil {
			return nil, fmt.Errorf("config: encode: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
