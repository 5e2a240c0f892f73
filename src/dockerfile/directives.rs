//! Parser directives: `# syntax=`, `# escape=`, `# check=` at the very top of the file.
