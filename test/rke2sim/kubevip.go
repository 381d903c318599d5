package rke2sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The expected objects below are written from what kube-vip's generator
// prints (testdata/kube-vip-v1.2.3-*.yaml), independently of the product's
// renderer, so that a renderer bug shows up here.

// vipSpec is what a valid kube-vip DaemonSet asks for.
type vipSpec struct {
	Interface     string
	Address       net.IP
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

func (s vipSpec) equal(o vipSpec) bool {
	return s.Interface == o.Interface && s.Address.Equal(o.Address) && s.LeaseDuration == o.LeaseDuration &&
		s.RenewDeadline == o.RenewDeadline && s.RetryPeriod == o.RetryPeriod
}

type manifestDoc struct {
	file string
	obj  map[string]any
}

// decodeManifest decodes every YAML document of one manifest file.
func decodeManifest(name string, raw []byte) ([]manifestDoc, error) {
	var docs []manifestDoc
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if obj != nil {
			docs = append(docs, manifestDoc{file: name, obj: obj})
		}
	}
}

// kubeVIPCheck validates manifests against the generator's output.
type kubeVIPCheck struct {
	version     string // e.g. v1.2.3
	image       string // repository, e.g. ghcr.io/kube-vip/kube-vip
	ifaceExists func(string) bool
}

// validate returns the VIP spec when the manifests hold a valid kube-vip;
// found is false when there is no kube-vip DaemonSet at all. Every problem
// names the field.
func (c kubeVIPCheck) validate(docs []manifestDoc) (spec vipSpec, found bool, problems []string) {
	var dsDocs []manifestDoc
	for _, d := range docs {
		if str(d.obj["kind"]) == "DaemonSet" && isKubeVIP(d.obj) {
			dsDocs = append(dsDocs, d)
		}
	}
	if len(dsDocs) == 0 {
		return vipSpec{}, false, nil
	}
	if len(dsDocs) > 1 {
		var where []string
		for _, d := range dsDocs {
			where = append(where, d.file+":"+str(dig(d.obj, "metadata", "name")))
		}
		return vipSpec{}, true, []string{fmt.Sprintf("%d kube-vip DaemonSets (%s), want one", len(dsDocs), strings.Join(where, ", "))}
	}
	for _, want := range kubeVIPRBAC() {
		kind, name := str(want["kind"]), str(dig(want, "metadata", "name"))
		var got []manifestDoc
		for _, d := range docs {
			if str(d.obj["kind"]) == kind && str(dig(d.obj, "metadata", "name")) == name {
				got = append(got, d)
			}
		}
		switch len(got) {
		case 0:
			problems = append(problems, fmt.Sprintf("%s %s missing", kind, name))
		case 1:
			for _, p := range diffTree("", want, got[0].obj) {
				problems = append(problems, fmt.Sprintf("%s %s: %s", kind, name, p))
			}
		default:
			problems = append(problems, fmt.Sprintf("%s %s appears %d times", kind, name, len(got)))
		}
	}
	ds := dsDocs[0].obj
	spec, envProblems := c.checkEnv(ds)
	problems = append(problems, envProblems...)
	problems = append(problems, diffTree("", c.daemonSet(), stripEnv(ds))...)
	return spec, true, problems
}

func isKubeVIP(obj map[string]any) bool {
	if strings.Contains(str(dig(obj, "metadata", "name")), "kube-vip") {
		return true
	}
	containers, _ := dig(obj, "spec", "template", "spec", "containers").([]any)
	for _, ct := range containers {
		if m, ok := ct.(map[string]any); ok && strings.Contains(str(m["image"]), "kube-vip") {
			return true
		}
	}
	return false
}

// stripEnv copies the DaemonSet without its first container's env, which
// checkEnv judges on its own (by name, in order).
func stripEnv(ds map[string]any) map[string]any {
	out := deepCopy(ds).(map[string]any)
	if containers, ok := dig(out, "spec", "template", "spec", "containers").([]any); ok && len(containers) > 0 {
		if ct, ok := containers[0].(map[string]any); ok {
			delete(ct, "env")
		}
	}
	return out
}

// envOrder is the generator's order of the container's env.
var envOrder = []string{
	"vip_arp", "port", "vip_nodename", "vip_interface", "vip_subnet", "dns_mode", "dhcp_mode",
	"cp_enable", "cp_namespace", "vip_leaderelection", "vip_leasename", "vip_leaseduration",
	"vip_renewdeadline", "vip_retryperiod", "address", "prometheus_server",
}

var envFixed = map[string]string{
	"vip_arp": "true", "port": "6443", "dns_mode": "first", "dhcp_mode": "ipv4", "cp_enable": "true",
	"cp_namespace": "kube-system", "vip_leaderelection": "true", "vip_leasename": "plndr-cp-lock",
	"prometheus_server": ":2112",
}

func (c kubeVIPCheck) checkEnv(ds map[string]any) (vipSpec, []string) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	containers, _ := dig(ds, "spec", "template", "spec", "containers").([]any)
	if len(containers) == 0 {
		return vipSpec{}, []string{"spec.template.spec.containers missing, want one container kube-vip"}
	}
	ct, _ := containers[0].(map[string]any)
	rawEnv, _ := ct["env"].([]any)
	got := map[string]map[string]any{}
	var order []string
	for i, e := range rawEnv {
		m, ok := e.(map[string]any)
		name := str(m["name"])
		if !ok || name == "" {
			add("env[%d] has no name", i)
			continue
		}
		if _, dup := got[name]; dup {
			add("env %s appears twice", name)
			continue
		}
		got[name] = m
		order = append(order, name)
	}
	for _, name := range envOrder {
		if _, ok := got[name]; !ok {
			add("env %s missing", name)
		}
	}
	known := map[string]bool{}
	for _, name := range envOrder {
		known[name] = true
	}
	for _, name := range order {
		if !known[name] {
			add("env %s unexpected (the generator does not set it)", name)
		}
	}
	if len(problems) == 0 && strings.Join(order, ",") != strings.Join(envOrder, ",") {
		add("env order is [%s], want the generator's [%s]", strings.Join(order, " "), strings.Join(envOrder, " "))
	}
	value := func(name string) (string, bool) {
		m, ok := got[name]
		if !ok {
			return "", false
		}
		v, isStr := m["value"].(string)
		if !isStr {
			if m["value"] != nil {
				add("env %s = %v (not a string), want a quoted string", name, m["value"])
			} else {
				add("env %s has no value", name)
			}
			return "", false
		}
		for k := range m {
			if k != "name" && k != "value" {
				add("env %s: unexpected field %s", name, k)
			}
		}
		return v, true
	}
	for _, name := range envOrder {
		if want, fixed := envFixed[name]; fixed {
			if v, ok := value(name); ok && v != want {
				add("env %s = %q, want %q", name, v, want)
			}
		}
	}
	if m, ok := got["vip_nodename"]; ok {
		want := map[string]any{"name": "vip_nodename", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "spec.nodeName"}}}
		for _, p := range diffTree("", want, m) {
			add("env vip_nodename: %s", p)
		}
	}
	var spec vipSpec
	if v, ok := value("vip_interface"); ok {
		switch {
		case v == "":
			add("env vip_interface = \"\", want an interface name")
		case c.ifaceExists != nil && !c.ifaceExists(v):
			add("env vip_interface = %q: no such interface on this host", v)
		default:
			spec.Interface = v
		}
	}
	if v, ok := value("address"); ok {
		ip := net.ParseIP(v)
		switch {
		case ip == nil:
			add("env address = %q, want an IP address", v)
		case ip.To4() == nil:
			add("env address = %q: only IPv4 VIPs are simulated", v)
		default:
			spec.Address = ip.To4()
		}
	}
	if v, ok := value("vip_subnet"); ok && v != "32" {
		add("env vip_subnet = %q, want %q", v, "32")
	}
	secs := func(name string) time.Duration {
		v, ok := value(name)
		if !ok {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || strconv.Itoa(n) != v {
			add("env %s = %q, want a positive number of seconds", name, v)
			return 0
		}
		return time.Duration(n) * time.Second
	}
	spec.LeaseDuration, spec.RenewDeadline, spec.RetryPeriod = secs("vip_leaseduration"), secs("vip_renewdeadline"), secs("vip_retryperiod")
	if spec.LeaseDuration > 0 && spec.RenewDeadline > 0 && spec.LeaseDuration <= spec.RenewDeadline {
		add("env vip_leaseduration (%v) must be greater than vip_renewdeadline (%v)", spec.LeaseDuration, spec.RenewDeadline)
	}
	// client-go's leader election: renew deadline > 1.2 × retry period.
	if spec.RenewDeadline > 0 && spec.RetryPeriod > 0 && spec.RenewDeadline*10 <= spec.RetryPeriod*12 {
		add("env vip_renewdeadline (%v) must be greater than 1.2 × vip_retryperiod (%v)", spec.RenewDeadline, spec.RetryPeriod)
	}
	return spec, problems
}

func (c kubeVIPCheck) daemonSet() map[string]any {
	labels := func() map[string]any {
		return map[string]any{"app.kubernetes.io/name": "kube-vip-ds", "app.kubernetes.io/version": c.version}
	}
	exists := func(key string) any {
		return map[string]any{"matchExpressions": []any{map[string]any{"key": key, "operator": "Exists"}}}
	}
	return map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "DaemonSet",
		"metadata":   map[string]any{"labels": labels(), "name": "kube-vip-ds", "namespace": "kube-system"},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "kube-vip-ds"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels()},
				"spec": map[string]any{
					"affinity": map[string]any{"nodeAffinity": map[string]any{
						"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{"nodeSelectorTerms": []any{
							exists("node-role.kubernetes.io/master"), exists("node-role.kubernetes.io/control-plane"),
						}},
					}},
					"containers": []any{map[string]any{
						"args":            []any{"manager"},
						"image":           c.image + ":" + c.version,
						"imagePullPolicy": "IfNotPresent",
						"name":            "kube-vip",
						"resources":       map[string]any{},
						"securityContext": map[string]any{"capabilities": map[string]any{
							"add": []any{"NET_ADMIN", "NET_RAW"}, "drop": []any{"ALL"},
						}},
					}},
					"hostNetwork":        true,
					"serviceAccountName": "kube-vip",
					"tolerations": []any{
						map[string]any{"effect": "NoSchedule", "operator": "Exists"},
						map[string]any{"effect": "NoExecute", "operator": "Exists"},
					},
				},
			},
			"updateStrategy": map[string]any{},
		},
	}
}

func kubeVIPRBAC() []map[string]any {
	rule := func(group string, resources []any, verbs ...any) any {
		return map[string]any{"apiGroups": []any{group}, "resources": resources, "verbs": verbs}
	}
	return []map[string]any{
		{
			"apiVersion": "v1", "kind": "ServiceAccount",
			"metadata": map[string]any{"name": "kube-vip", "namespace": "kube-system"},
		},
		{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": "system:kube-vip-role"},
			"rules": []any{
				rule("", []any{"services/status"}, "update"),
				rule("", []any{"services", "endpoints"}, "list", "get", "watch", "update"),
				rule("", []any{"nodes"}, "list", "get", "watch", "update", "patch"),
				rule("coordination.k8s.io", []any{"leases"}, "list", "get", "watch", "update", "create"),
				rule("discovery.k8s.io", []any{"endpointslices"}, "list", "get", "watch", "update"),
				rule("", []any{"pods"}, "list"),
			},
		},
		{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": map[string]any{"name": "system:kube-vip-binding"},
			"roleRef": map[string]any{
				"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kube-vip-role",
			},
			"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system"}},
		},
	}
}

// diffTree lists every difference between want and got. An absent field,
// null, {} and [] are the same (as the API server treats them); scalar
// types must match (a number is not a string).
func diffTree(path string, want, got any) []string {
	if isEmpty(want) && isEmpty(got) {
		return nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			if got == nil {
				return []string{fmt.Sprintf("%s missing", orRoot(path))}
			}
			return []string{fmt.Sprintf("%s = %s, want a mapping", orRoot(path), show(got))}
		}
		var out []string
		for _, k := range sortedKeys(w) {
			gv, present := g[k]
			if !present && !isEmpty(w[k]) {
				out = append(out, fmt.Sprintf("%s missing, want %s", join(path, k), show(w[k])))
				continue
			}
			out = append(out, diffTree(join(path, k), w[k], gv)...)
		}
		for _, k := range sortedKeys(g) {
			if _, known := w[k]; !known && !isEmpty(g[k]) {
				out = append(out, fmt.Sprintf("%s = %s unexpected (the generator does not set it)", join(path, k), show(g[k])))
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s = %s, want a list %s", orRoot(path), show(got), show(w))}
		}
		var out []string
		if len(g) != len(w) {
			out = append(out, fmt.Sprintf("%s has %d items, want %d: %s", orRoot(path), len(g), len(w), show(w)))
		}
		for i := range min(len(g), len(w)) {
			out = append(out, diffTree(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	default:
		if got == nil {
			return []string{fmt.Sprintf("%s missing, want %s", orRoot(path), show(want))}
		}
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) || want != got {
			return []string{fmt.Sprintf("%s = %s, want %s", orRoot(path), show(got), show(want))}
		}
		return nil
	}
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}

func show(v any) string {
	switch t := v.(type) {
	case string:
		return strconv.Quote(t)
	case map[string]any, []any:
		raw, err := json.Marshal(t)
		if err != nil {
			return fmt.Sprint(t)
		}
		return string(raw)
	default:
		return fmt.Sprint(t)
	}
}

func join(path, key string) string {
	if strings.ContainsAny(key, "./") {
		return path + "[" + key + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "document"
	}
	return path
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = deepCopy(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = deepCopy(x)
		}
		return out
	default:
		return v
	}
}
