"""privileges"""
