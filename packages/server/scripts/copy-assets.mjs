#!/usr/bin/env node
// Build step after tsup: copies the static playground page beside the bundles (dist/playground/), where
// the server looks for it relative to its own module.
import { cpSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
cpSync(join(root, 'src', 'playground'), join(root, 'dist', 'playground'), { recursive: true });
