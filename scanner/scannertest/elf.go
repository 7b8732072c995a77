package scannertest

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"testing"
)

// Crate is one package of a cargo-auditable dependency list.
type Crate struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Source       string `json:"source"`
	Kind         string `json:"kind,omitempty"` // "build" for build-time dependencies; runtime when empty
	Dependencies []int  `json:"dependencies,omitempty"`
	Root         bool   `json:"root,omitempty"`
}

// AuditableELF is a minimal x86-64 ELF executable carrying crates in a .dep-v0 section,
// zlib-compressed JSON, as `cargo auditable build` embeds them. It holds only the ELF
// header, the section and the section name table: enough for debug/elf and
// go-rustaudit, which is how Trivy reads Rust binaries, without cargo on the machine.
func AuditableELF(t testing.TB, crates []Crate) []byte {
	t.Helper()
	js, err := json.Marshal(map[string]any{"packages": crates})
	if err != nil {
		t.Fatal(err)
	}
	var dep bytes.Buffer
	zw := zlib.NewWriter(&dep)
	_, _ = zw.Write(js)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	shstrtab := []byte("\x00.dep-v0\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	depOff := uint64(ehsize)
	strOff := depOff + uint64(dep.Len())
	shOff := (strOff + uint64(len(shstrtab)) + 7) &^ 7
	hdr := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: ehsize, Phentsize: 56, Shentsize: shentsize, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	sections := []elf.Section64{
		{}, // SHN_UNDEF
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: depOff, Size: uint64(dep.Len()), Addralign: 1},
		{Name: 9, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstrtab)), Addralign: 1},
	}
	var out bytes.Buffer
	_ = binary.Write(&out, binary.LittleEndian, hdr)
	out.Write(dep.Bytes())
	out.Write(shstrtab)
	out.Write(make([]byte, int(shOff)-out.Len()))
	_ = binary.Write(&out, binary.LittleEndian, sections)
	return out.Bytes()
}
