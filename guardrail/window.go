package guardrail

import "time"

// WindowOf returns the fixed window of the given length that holds t:
// windows are aligned to multiples of their length since the Unix epoch
// (a 1m window starts on each minute, a 10m window at :00, :10, ...), so
// every instance, whatever its start time, counts in the same windows.
func WindowOf(t time.Time, length time.Duration) (start, end time.Time) {
	i := windowIndex(t, int64(length/time.Second))
	return windowStart(i, int64(length/time.Second)), windowStart(i+1, int64(length/time.Second))
}

// windowIndex numbers the windows of sec seconds since the epoch.
func windowIndex(t time.Time, sec int64) int64 {
	ns := t.UnixNano()
	w := sec * int64(time.Second)
	i := ns / w
	if ns < 0 && ns%w != 0 {
		i-- // floor, for times before 1970
	}
	return i
}

func windowStart(i, sec int64) time.Time { return time.Unix(i*sec, 0).UTC() }
