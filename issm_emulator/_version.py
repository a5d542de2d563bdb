"""The package version, in a module of its own so that any layer can read it without importing the root
package (whose lazy attributes reach the top layers)."""

__version__ = "0.1.0.dev0"
