package actions

// SetStep lets tests run code at the named steps of handling a firing.
func (a *Actor) SetStep(fn func(name string)) { a.step = fn }
