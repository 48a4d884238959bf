"""The stack's controller-side code shared by its filter plugins (plugins/filter/*.py).

Ansible loads each filter file by its path, not as part of a package, so a filter puts
plugins/plugin_utils on sys.path (appended, once) and imports from here as from any module.
"""
