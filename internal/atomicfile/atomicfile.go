// Package atomicfile replaces files so that a reader, or a crash, sees
// either the old content or the new, never a part of it.
package atomicfile

import (
	"bufio"
	"os"
	"path/filepath"
)

// Write replaces path with what write writes into a buffer over the new
// file. The new file keeps the mode
// of the file it replaces, so that an operator's chmod (or the install
// script's) survives; a new file gets perm. The data is synced before the
// rename and the directory after it.
func Write(path string, perm os.FileMode, write func(*bufio.Writer) error) error {
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	w := bufio.NewWriterSize(f, 64<<10)
	err = write(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: not every file system syncs directories
		d.Close()
	}
	return nil
}

// WriteFile is Write for data in hand.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w *bufio.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
