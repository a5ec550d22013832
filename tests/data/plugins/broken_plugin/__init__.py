"""A plugin that fails to import: every command warns once and goes on without it."""

raise ImportError("this plugin needs the package 'missing-dependency'")
