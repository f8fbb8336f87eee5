package access

import "testing"

func TestKeyCovers(t *testing.T) {
	tests := []struct {
		key     []string
		pattern string
		want    bool
	}{
		{nil, "anything:*", true}, // a key without patterns sends everywhere
		{[]string{"*"}, "*", true},
		{[]string{"*"}, "user:*", true},
		{[]string{"orders:*"}, "orders:42", true},
		{[]string{"orders:*"}, "orders:4*", true},
		{[]string{"orders:*"}, "orders:?", true},
		{[]string{"orders:*"}, "orders:*", true},
		{[]string{"orders:*"}, "orders*", false},
		{[]string{"orders:*"}, "*", false},
		{[]string{"orders:*"}, "news:1", false},
		{[]string{"orders:*"}, "?rders:1", false},
		{[]string{"orders:1"}, "orders:1", true},
		{[]string{"orders:1"}, "orders:1*", false},
		{[]string{"orders:?"}, "orders:1", false}, // conservative: covered, but not by the rule
		{[]string{"news:*", "orders:*"}, "orders:1", true},
		{[]string{"a*b*"}, "a*bc", true},
	}
	for _, tt := range tests {
		k := &Key{name: "k", channels: tt.key}
		if got := k.Covers(tt.pattern); got != tt.want {
			t.Errorf("key %v covers %q = %v, want %v", tt.key, tt.pattern, got, tt.want)
		}
	}
}
