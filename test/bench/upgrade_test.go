package main

import (
	"slices"
	"testing"
)

// The agents' places are found from the begins and dones as they were
// committed: each later agent follows the agent whose done freed its
// place, and the critical path as it ran takes the longest place.
func TestAgentPlaces(t *testing.T) {
	a := func(name string, begin, restart, done float64) upgradeHostTimes {
		return upgradeHostTimes{Host: name, Role: "agent", Begin: begin, Steps: map[string]float64{"restart": begin + 0.01}, Finished: begin + 0.01 + restart, Done: done}
	}
	hosts := []upgradeHostTimes{
		{Host: "s1", Role: "server", Begin: 0, Steps: map[string]float64{"restart": 0.5}, Finished: 2.5, Done: 2.6},
		a("a1", 2.6, 2.0, 4.7),
		a("a2", 2.6, 2.4, 5.1),
		a("a3", 4.7, 2.0, 6.8), // a1's place
		a("a4", 5.1, 2.4, 7.6), // a2's place
		a("a5", 6.8, 2.0, 8.9), // a3's place
	}
	var got [][]string
	for _, p := range agentPlaces(hosts, 2) {
		var names []string
		for _, h := range p {
			names = append(names, h.Host)
		}
		got = append(got, names)
	}
	if want := [][]string{{"a1", "a3", "a5"}, {"a2", "a4"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("places %q, want %q", got, want)
	}
}
