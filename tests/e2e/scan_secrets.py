"""scan_secrets.py: after the whole suite, reads every engine output the
end-to-end tests kept (ENGINE_TEST_OUTPUT) and fails if any test secret
appears in it. With "--clear" it empties the folder before the suite."""
import glob
import os
import shutil
import sys

from harness import OUTPUT_DIR, SECRETS


def main():
    if not OUTPUT_DIR:
        print("ENGINE_TEST_OUTPUT is not set")
        return 1
    if sys.argv[1:] == ["--clear"]:
        shutil.rmtree(OUTPUT_DIR, ignore_errors=True)
        os.makedirs(OUTPUT_DIR)
        return 0
    files = glob.glob(os.path.join(OUTPUT_DIR, "*.log"))
    if not files:
        print("no engine output was kept in %s: the scan would prove nothing" % OUTPUT_DIR)
        return 1
    size, leaks = 0, []
    for path in files:
        with open(path, errors="replace") as f:
            text = f.read()
        size += len(text)
        leaks += ["%s in %s" % (s, path) for s in SECRETS if s in text]
    print("scanned %d bytes of engine output from %d test processes" % (size, len(files)))
    for leak in leaks:
        print("secret leaked: " + leak)
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
