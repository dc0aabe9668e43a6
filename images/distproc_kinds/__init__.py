"""Task kinds shipped in the image: add a module here and name it as `module:function`."""
