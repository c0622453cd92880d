#!/usr/bin/env python3
"""The functions a binary executed, from callgrind profiles taken with --dump-instr=yes.

    link_order.py --binary BIN PROFILE... [--binary BIN2 PROFILE...] [--with REGEX]... [--order-out FILE]

For each binary: every instruction address callgrind saw executed in it, the functions those
addresses fall in (from `nm`), and how the executed code lies in the binary: 4 KiB pages and
64 KiB runs (what the kernel maps around each page fault) touched. With --order-out, writes the
executed functions of every binary as a linker symbol ordering file (link/order.txt, written by
bench/link-order.sh): each binary's in turn, grouped by the profiles that ran them (those every
profile ran first), the most executed first within a group. Reports go to stderr.

--with REGEX (repeatable) adds, after each binary's executed functions, every function whose
demangled name matches: code that a gateway runs natively but not under valgrind, such as a
CPU-feature variant chosen at run time (valgrind's CPU has no SHA extensions) or the
allocator's paths under more memory churn than a profile makes.
"""
import bisect
import re
import subprocess
import sys

POS = re.compile(r'^(ob|fn|cob|cfn)=\((\d+)\)(?: (.*))?$')


def executed_addresses(profile, binary, addrs, runs, bit):
    """Adds to `addrs` the instruction addresses in `binary` that the profile counts
    (positions: instr line), with the instructions executed at each (events: Ir), and marks
    each address in `runs` with `bit`."""
    names, obj, last, call = {}, None, [0, 0], False
    with open(profile) as f:
        for line in f:
            if line.startswith('calls='):
                call = True  # the next cost line is the call's inclusive cost
                continue
            m = POS.match(line.rstrip('\n'))
            if m:
                kind, ident, name = m.groups()
                if kind in ('ob', 'cob'):
                    if name is not None:
                        names[ident] = name
                    if kind == 'ob':
                        obj = names.get(ident)
                continue
            if not line or line[0] not in '0123456789+-*':
                continue
            tokens = line.split()
            for i in (0, 1):
                t = tokens[i]
                if t == '*':
                    continue
                last[i] = last[i] + int(t, 0) if t[0] in '+-' else int(t, 0)
            if obj == binary:
                own = 0 if call or len(tokens) < 3 else int(tokens[2])
                addrs[last[0]] = addrs.get(last[0], 0) + own
                runs[last[0]] = runs.get(last[0], 0) | bit
            call = False


def functions(binary):
    """(address, size, mangled name, demangled name) of the binary's functions, by address."""
    def nm(*flags):
        # -p: symbol-table order, the same for both calls.
        return subprocess.run(['nm', '-p', '-S', '--defined-only', *flags, binary],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    syms = []
    for line, plain in zip(nm(), nm('--demangle')):
        p = line.split()
        if len(p) == 4 and p[2] in 'tTwW':
            syms.append((int(p[0], 16), int(p[1], 16), p[3], plain.split(' ', 3)[3]))
    syms.sort()
    return syms


def report(binary, addrs, runs, syms, extra):
    starts = [s[0] for s in syms]
    hit, cost, seen_in = {}, {}, {}
    for a, ir in addrs.items():
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and syms[i][0] <= a < syms[i][0] + syms[i][1]:
            hit[syms[i][0]] = syms[i]
            cost[syms[i][0]] = cost.get(syms[i][0], 0) + ir
            seen_in[syms[i][0]] = seen_in.get(syms[i][0], 0) | runs[a]
    if not hit:
        sys.exit(f'{binary}: no executed address falls in a function of its symbol table')
    pages = {a // 4096 for a in addrs}
    runs = {a // 65536 for a in addrs}
    size = sum(s[1] for s in hit.values())
    print(f'{binary}: {len(hit)} functions executed, {size / 1024:.0f} KiB of code; '
          f'they touch {len(pages)} pages of 4 KiB ({len(pages) * 4} KiB) in {len(runs)} runs '
          f'of 64 KiB ({len(runs) * 64} KiB)', file=sys.stderr)
    # Grouped by the set of profiles that ran them: what every profile ran first, then each
    # smaller set together, so that each way of running a gateway touches few stretches of
    # code. Within a group the most executed first, so the request path shares few pages.
    def key(a):
        return (-bin(seen_in[a]).count('1'), seen_in[a], -cost[a], a)
    groups = {}
    for a in hit:
        n, kib = groups.get(seen_in[a], (0, 0))
        groups[seen_in[a]] = (n + 1, kib + hit[a][1] / 1024)
    for mask in sorted(groups, key=lambda m: (-bin(m).count('1'), m)):
        which = [str(i + 1) for i in range(mask.bit_length()) if mask >> i & 1]
        n, kib = groups[mask]
        print(f'  run by profile {"+".join(which)}: {n} functions, {kib:.0f} KiB', file=sys.stderr)
    added = [s for s in syms if s[0] not in hit and any(r.search(s[3]) for r in extra)]
    if extra:
        print(f'  added by --with: {len(added)} functions, {sum(s[1] for s in added) / 1024:.0f} KiB',
              file=sys.stderr)
    return [hit[a][2] for a in sorted(hit, key=key)] + [s[2] for s in added]


def main(argv):
    groups, order_out, extra, i = [], None, [], 0
    while i < len(argv):
        if argv[i] == '--with':
            extra.append(re.compile(argv[i + 1]))
            i += 2
        elif argv[i] == '--binary':
            groups.append((argv[i + 1], []))
            i += 2
        elif argv[i] == '--order-out':
            order_out = argv[i + 1]
            i += 2
        elif groups:
            groups[-1][1].append(argv[i])
            i += 1
        else:
            sys.exit(__doc__)
    if not groups or any(not profiles for _, profiles in groups):
        sys.exit(__doc__)
    ordered, seen = [], set()
    for binary, profiles in groups:
        addrs, runs = {}, {}
        for n, p in enumerate(profiles):
            executed_addresses(p, binary, addrs, runs, 1 << n)
        if not addrs:
            sys.exit(f'no executed instructions of {binary} in {profiles} (was it run with --dump-instr=yes?)')
        for name in report(binary, addrs, runs, functions(binary), extra):
            if name not in seen:
                seen.add(name)
                ordered.append(name)
    if order_out:
        with open(order_out, 'w') as f:
            f.write('# The functions a running gateway executes, laid out together by the linker\n'
                    '# (link/build.rs). Written by bench/link-order.sh; do not edit by hand.\n')
            f.writelines(n + '\n' for n in ordered)
        print(f'{order_out}: {len(ordered)} functions', file=sys.stderr)


if __name__ == '__main__':
    main(sys.argv[1:])
