package cloud

import "testing"

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		mb   string
		want int64
	}{
		{"3008", 3008 << 20 / 10 * 9},
		{"10240", 10240 << 20 / 10 * 9},
		{"128", 128 << 20 / 10 * 9},
		{"", 0},
		{"x", 0},
		{"-5", 0},
		{"0", 0},
		{"99999999999", 0},
	} {
		if got := memoryLimit(tc.mb); got != tc.want {
			t.Errorf("memoryLimit(%q) = %d, want %d", tc.mb, got, tc.want)
		}
	}
}
