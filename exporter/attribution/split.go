package attribution

import "math"

type candidate struct {
	Owner
	weight [2]float64
	birth  bool
}

// Until a user's connections have been measured, assume this many bytes
// each way.
const defaultBirthBytes = 16 << 10

// Weights of the newest measurement of a user's connections: a window
// explained by that user's unseen connections alone measures their average
// exactly; one connection caught once is a sample of one, uniform between
// nothing and twice the size, so it takes about forty to average its noise
// below a tenth.
const (
	avgAlpha    = 0.3
	sampleAlpha = 0.05
)

// learnSize records what a short connection that was seen once and has now
// closed moved in all. A user's connections that close unseen are weighed
// by this: under overlap it is the best evidence there is of their size,
// since windows with one user's unseen connections alone are rare, and
// without it a user's unseen downloads were weighed like a few kilobytes
// against other users' tails of whole megabytes. Connections seen more than once lived longer than a
// window and say nothing about those that lived less: one long download
// would make the user's next short ones look huge.
//
// A connection seen once was caught at a moment spread evenly over its
// life, so twice what that snapshot saw is its size on average; a tail
// guessed from its rate would overrate the many that were about to end.
func (e *Engine) learnSize(t *tracked) {
	if t.Interval > 0 {
		return
	}
	e.record(t.User, [2]float64{2 * float64(t.Up), 2 * float64(t.Down)}, sampleAlpha)
}

// record folds one measured connection size into a user's average.
func (e *Engine) record(user string, size [2]float64, alpha float64) {
	a, ok := e.avg[user]
	if !ok {
		e.avg[user] = &size
		return
	}
	for dir := range a {
		a[dir] = (1-alpha)*a[dir] + alpha*size[dir]
	}
}

func (e *Engine) birthWeight(user string) [2]float64 {
	if a, ok := e.avg[user]; ok {
		return [2]float64{a[up] + 1, a[down] + 1}
	}
	return [2]float64{defaultBirthBytes, defaultBirthBytes}
}

// settle gives the positive remainder to the candidates that explain it, or
// declares it unattributed once it has waited long enough for one. The
// share of a candidate of no known user is unattributed too.
func (e *Engine) settle(cands []candidate, r *Result) {
	if len(cands) == 0 {
		if e.pool[up] <= 0 && e.pool[down] <= 0 {
			e.idle = 0
			return
		}
		e.idle++
		if e.idle >= e.opts.PoolPolls {
			e.declare(r)
		}
		return
	}
	e.idle = 0
	rem := [2]uint64{takePositive(&e.pool[up]), takePositive(&e.pool[down])}
	e.learn(cands, rem)
	r.Settled = Settlement{Remainder: Traffic{rem[up], rem[down]}, Users: map[string]int{}}
	for _, c := range cands {
		if c.User != "" {
			r.Settled.Users[c.User]++
		}
	}
	var unknown [2]uint64
	for dir := range rem {
		weights := make([]float64, len(cands))
		for i, c := range cands {
			weights[i] = c.weight[dir]
		}
		for i, share := range split(rem[dir], weights) {
			if cands[i].User == "" {
				unknown[dir] += share
				continue
			}
			t := r.Owners[cands[i].Owner]
			if dir == up {
				t.Up += share
			} else {
				t.Down += share
			}
			r.Owners[cands[i].Owner] = t
		}
	}
	r.Unattributed = r.Unattributed.Add(Traffic{unknown[up], unknown[down]})
	if !singleUser(cands) {
		r.Estimated = r.Estimated.Add(Traffic{rem[up] - unknown[up], rem[down] - unknown[down]})
	}
}

// declare makes the whole positive remainder unattributed and returns it.
func (e *Engine) declare(r *Result) Traffic {
	t := Traffic{takePositive(&e.pool[up]), takePositive(&e.pool[down])}
	r.Unattributed = r.Unattributed.Add(t)
	e.idle = 0
	return t
}

// learn records the bytes per short connection of a user whose short
// connections alone explain a remainder: that measurement is exact.
func (e *Engine) learn(cands []candidate, rem [2]uint64) {
	if !singleUser(cands) {
		return
	}
	for _, c := range cands {
		if !c.birth {
			return
		}
	}
	n := float64(len(cands))
	e.record(cands[0].User, [2]float64{float64(rem[up]) / n, float64(rem[down]) / n}, avgAlpha)
}

func singleUser(cands []candidate) bool {
	for _, c := range cands[1:] {
		if c.User != cands[0].User {
			return false
		}
	}
	return true
}

func takePositive(v *int64) uint64 {
	if *v <= 0 {
		return 0
	}
	n := uint64(*v)
	*v = 0
	return n
}

// split divides total in proportion to weights; rounding leftovers go to the
// heaviest weight so that the shares add up to total exactly.
func split(total uint64, weights []float64) []uint64 {
	shares := make([]uint64, len(weights))
	var sum float64
	heaviest := 0
	for i, w := range weights {
		sum += w
		if w > weights[heaviest] {
			heaviest = i
		}
	}
	if sum <= 0 || math.IsInf(sum, 0) || math.IsNaN(sum) {
		shares[0] = total
		return shares
	}
	var given uint64
	for i, w := range weights {
		shares[i] = uint64(float64(total) * (w / sum))
		given += shares[i]
	}
	if given > total { // float rounding can overshoot by a byte
		shares[heaviest] -= given - total
	} else {
		shares[heaviest] += total - given
	}
	return shares
}
